//! Property-test falsifiers: each runs the proptest strategy generated from its obligation's
//! `generators:` (`falsifiers::generators`, built by `build.rs`) through `falsifiers::prop::check`,
//! which writes the shrunk counterexample of a failure into the evidence record. Each property
//! takes the function under test as a parameter, and the `planted_*` tests at the end run it
//! against a deliberately wrong function to show that it fails, shrinks and records the case.
//!
//! The references here are written from the equations in the contracts (float64, per output
//! index), not from the engine's loops.

use contract_macros::falsifier;
use engine::gguf::{GgufFile, GgufWriter, Value};
use engine::model::ops::{rms_norm, rope_neox, rope_table, softmax_in_place, top_k_indices};
use engine::quant::blocks::scale_min_k4;
use engine::quant::{dequantize_row, dequantize_row_scalar, QType};
use falsifiers::generators as g;
use falsifiers::prop::{self, PropReport};
use pv_evidence::{Ctx, FalsifierResult};

/// 2^-24, the unit roundoff of f32.
const U: f64 = 1.0 / 16_777_216.0;

/// `err <= bound`, false when either is NaN (a NaN result must fail the property, which a
/// negated `>` would not do).
fn within(err: f64, bound: f64) -> bool {
    err <= bound
}

fn report(ctx: &mut Ctx, r: PropReport) {
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
}

// ---------------------------------------------------------------------------------------------
// Q4_K and Q6_K dequantization against float64 (PO-QK-Q4K-003, PO-QK-Q6K-001)

type Dequant = fn(QType, &[u8], &mut [f32]);

fn production(q: QType, src: &[u8], out: &mut [f32]) {
    dequantize_row(q, src, out).expect("lengths come from the generator");
}

fn scalar(q: QType, src: &[u8], out: &mut [f32]) {
    dequantize_row_scalar(q, src, out).expect("lengths come from the generator");
}

fn path_fn(path: &str) -> Dequant {
    if path == "scalar" {
        scalar
    } else {
        production
    }
}

/// IEEE half -> f64, from the format's definition (not the engine's converter).
fn half(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let (exp, mant) = (((bits >> 10) & 31) as i32, (bits & 1023) as f64);
    sign * match exp {
        0 => mant * 2f64.powi(-24),
        _ => (1024.0 + mant) * 2f64.powi(exp - 25),
    }
}

/// The equations' precondition is a finite super-scale: an f16 with exponent 31 (inf/NaN) gets
/// its top exponent bit cleared, which keeps every other bit the generator drew.
fn finite_half(row: &mut [u8], at: usize) {
    if (u16::from_le_bytes([row[at], row[at + 1]]) >> 10) & 31 == 31 {
        row[at + 1] &= !0x40;
    }
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// `len` bits of the 12 scale bytes as a 96-bit little-endian field, from bit `start`.
fn scale_bits(s: &[u8], start: usize, len: usize) -> u32 {
    (start..start + len).fold(0, |v, k| {
        v | ((((s[k / 8] >> (k % 8)) & 1) as u32) << (k - start))
    })
}

/// EQ-QK-Q4K-DEQUANT in float64 for output `n` of a 144-byte block: (value, error scale
/// |d sc q| + |dmin m|).
fn q4k_value(b: &[u8], n: usize) -> (f64, f64) {
    let (j, i) = (n / 32, n % 32);
    let s = &b[4..16];
    let (sc, m) = if j < 4 {
        (scale_bits(s, 8 * j, 6), scale_bits(s, 8 * (j + 4), 6))
    } else {
        (
            scale_bits(s, 8 * (j + 4), 4) | scale_bits(s, 8 * (j - 4) + 6, 2) << 4,
            scale_bits(s, 8 * (j + 4) + 4, 4) | scale_bits(s, 8 * j + 6, 2) << 4,
        )
    };
    let byte = b[16 + 32 * (j / 2) + i];
    let q = if j % 2 == 0 { byte & 15 } else { byte >> 4 };
    let (d, dmin) = (half(rd16(b, 0)), half(rd16(b, 2)));
    let (a, c) = (d * sc as f64 * q as f64, dmin * m as f64);
    (a - c, a.abs() + c.abs())
}

/// EQ-QK-Q6K-DEQUANT in float64 for output `n` of a 210-byte block: (value, |value|).
fn q6k_value(b: &[u8], n: usize) -> (f64, f64) {
    let (h, g, l) = (n / 128, (n % 128) / 32, n % 32);
    let ql = b[64 * h + 32 * (g % 2) + l];
    let low = if g < 2 { ql & 15 } else { ql >> 4 };
    let high = (b[128 + 32 * h + l] >> (2 * g)) & 3;
    let q = (low | high << 4) as i32 - 32;
    let sc = b[192 + 8 * h + 2 * g + l / 16] as i8;
    let v = half(rd16(b, 208)) * sc as f64 * q as f64;
    (v, v.abs())
}

/// Every output within `rel * scale` of the float64 value (the proven rounding bound).
fn dequant_property(
    q: QType,
    row: &[u8],
    scale_at: &[usize],
    dequant: Dequant,
    value: fn(&[u8], usize) -> (f64, f64),
    rel: f64,
) -> Result<(), String> {
    let (bs, bb) = (q.block_size(), q.block_bytes());
    let mut row = row.to_vec();
    for block in row.chunks_exact_mut(bb) {
        for &at in scale_at {
            finite_half(block, at);
        }
    }
    let mut out = vec![0f32; row.len() / bb * bs];
    dequant(q, &row, &mut out);
    for (n, &y) in out.iter().enumerate() {
        let (want, scale) = value(&row[n / bs * bb..][..bb], n % bs);
        if !within((y as f64 - want).abs(), rel * scale) {
            return Err(format!(
                "value {n}: got {y:e}, float64 {want:e}, bound {:e}",
                rel * scale
            ));
        }
    }
    Ok(())
}

fn q4k_property(inp: &g::po_qk_q4k_003::Inputs, dequant: Dequant) -> Result<(), String> {
    dequant_property(QType::Q4K, &inp.row, &[0, 2], dequant, q4k_value, 4.0 * U)
}

fn q6k_property(inp: &g::po_qk_q6k_001::Inputs, dequant: Dequant) -> Result<(), String> {
    dequant_property(QType::Q6K, &inp.row, &[208], dequant, q6k_value, 2.0 * U)
}

#[falsifier("FALSIFY-QK-PROP-Q4K-001")]
fn q4k_dequant_within_rounding_of_f64(ctx: &mut Ctx) -> FalsifierResult {
    use g::po_qk_q4k_003 as spec;
    let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
        q4k_property(inp, path_fn(inp.path))
    })?;
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
    Ok(())
}

#[falsifier("FALSIFY-QK-PROP-Q6K-001")]
fn q6k_dequant_within_rounding_of_f64(ctx: &mut Ctx) -> FalsifierResult {
    use g::po_qk_q6k_001 as spec;
    let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
        q6k_property(inp, path_fn(inp.path))
    })?;
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// scale_min_k4, exhaustively (PO-QK-SCALES-001; the Kani harnesses are in proofs::quant)

type ScaleMin = fn(usize, &[u8]) -> (u8, u8);

/// Mismatches against `proofs::quant::spec_scale_min` over every pattern of the bytes each j
/// reads, and against the packing round trip over every pair; (mismatches, patterns, first).
fn scale_min_exhaustive(f: ScaleMin) -> (u64, u64, Option<String>) {
    let (mut bad, mut checked, mut first) = (0u64, 0u64, None);
    let mut s = [0u8; 12];
    for (i, b) in s.iter_mut().enumerate() {
        *b = (0x85eb_ca6bu32.wrapping_mul(i as u32 + 7) >> 24) as u8;
    }
    for j in 0..8 {
        let reads: &[usize] = if j < 4 {
            &[j, j + 4]
        } else {
            &[j + 4, j - 4, j]
        };
        for pattern in 0u32..1 << (8 * reads.len()) {
            for (k, &at) in reads.iter().enumerate() {
                s[at] = (pattern >> (8 * k)) as u8;
            }
            let got = f(j, &s);
            checked += 1;
            if got.0 >= 64 || got.1 >= 64 || got != proofs::quant::spec_scale_min(&s, j) {
                bad += 1;
                first.get_or_insert_with(|| format!("j={j} bytes={s:?} got={got:?}"));
            }
        }
        for pair in 0u32..4096 {
            let mut sc = [5, 17, 33, 63, 0, 42, 9, 28];
            let mut m = [61, 2, 40, 13, 63, 7, 31, 50];
            sc[j] = (pair & 63) as u8;
            m[j] = (pair >> 6) as u8;
            let packed = proofs::quant::pack_scales_k4(&sc, &m);
            checked += 1;
            if (0..8).any(|i| f(i, &packed) != (sc[i], m[i])) {
                bad += 1;
                first.get_or_insert_with(|| format!("round trip j={j} sc={sc:?} m={m:?}"));
            }
        }
    }
    (bad, checked, first)
}

#[falsifier("FALSIFY-QK-SCALES-001")]
fn scale_min_k4_exhaustive(ctx: &mut Ctx) -> FalsifierResult {
    let (bad, checked, first) = scale_min_exhaustive(scale_min_k4);
    if let Some(f) = first {
        ctx.detail("first_mismatch", serde_json::Value::String(f));
    }
    ctx.metric("mismatches", bad as f64);
    ctx.metric("patterns_checked", checked as f64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Router softmax and top-k (PO-QW3-ROUTER-002)

type TopK = fn(&[f32], usize) -> Vec<usize>;

fn router_property(inp: &g::po_qw3_router_002::Inputs, top_k: TopK) -> Result<(), String> {
    let logits: Vec<f32> = inp.half_logits.iter().map(|&h| h as f32 * 0.5).collect();
    let e = logits.len();
    let k = (inp.k as usize).min(e);
    let mut p = logits.clone();
    softmax_in_place(&mut p);
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let sum: f64 = p.iter().map(|&v| v as f64).sum();
    if !within((sum - 1.0).abs(), (e as f64 + 4.0) * U) {
        return Err(format!("probabilities sum to {sum}"));
    }
    for (i, (&v, &x)) in p.iter().zip(&exps).enumerate() {
        let want = x / total;
        if !((0.0..=1.0).contains(&v)
            && (v as f64 - want).abs() <= (e as f64 + 16.0) * U * want + 1e-30)
        {
            return Err(format!("p[{i}] = {v:e}, float64 {want:e}"));
        }
    }
    let top = top_k(&p, k);
    if top.len() != k {
        return Err(format!("top_k returned {} indices for k = {k}", top.len()));
    }
    // Before: larger probability, or equal probability and lower index (llama.cpp's argsort).
    let before = |a: usize, b: usize| p[a] > p[b] || (p[a] == p[b] && a < b);
    for w in top.windows(2) {
        if !before(w[0], w[1]) {
            return Err(format!("top_k order {top:?}: {} before {}", w[0], w[1]));
        }
    }
    for u in (0..e).filter(|u| !top.contains(u)) {
        if let Some(&s) = top.iter().find(|&&s| !before(s, u)) {
            return Err(format!(
                "expert {u} (p {:e}) left out, {s} (p {:e}) chosen",
                p[u], p[s]
            ));
        }
    }
    if top.iter().map(|&s| p[s]).sum::<f32>().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        return Err("the chosen probabilities sum to 0".into());
    }
    Ok(())
}

#[falsifier("FALSIFY-QW3-PROP-ROUTER-001")]
fn router_softmax_top_k_invariants(ctx: &mut Ctx) -> FalsifierResult {
    use g::po_qw3_router_002 as spec;
    let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
        router_property(inp, top_k_indices)
    })?;
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RMSNorm (PO-QW3-RMSNORM-002)

type RmsNorm = fn(&mut [f32], &[f32], &[f32], f32);

fn rmsnorm_property(inp: &g::po_qw3_rmsnorm_002::Inputs, norm: RmsNorm) -> Result<(), String> {
    // Magnitudes below 1e-30 become 0, so that scaling by 2^-8 stays exact (no subnormals).
    let x: Vec<f32> = inp
        .x
        .iter()
        .map(|&v| if v.abs() < 1e-30 { 0.0 } else { v as f32 })
        .collect();
    let w: Vec<f32> = (0..x.len())
        .map(|i| inp.gain as f32 * (0.5 + 0.25 * (i % 4) as f32))
        .collect();
    let eps = inp.eps as f32;
    let mut y = vec![0f32; x.len()];
    norm(&mut y, &x, &w, eps);
    let mean = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (mean + eps as f64).sqrt();
    for i in 0..x.len() {
        let want = x[i] as f64 * inv * w[i] as f64;
        if !within((y[i] as f64 - want).abs(), 8.0 * U * want.abs() + 1e-30) {
            return Err(format!("y[{i}] = {:e}, float64 {want:e}", y[i]));
        }
    }
    let c = 2f32.powi(inp.scale_exp as i32);
    let xs: Vec<f32> = x.iter().map(|&v| v * c).collect();
    let mut ys = vec![0f32; x.len()];
    norm(&mut ys, &xs, &w, eps * c * c);
    if let Some(i) = (0..x.len()).find(|&i| ys[i].to_bits() != y[i].to_bits()) {
        return Err(format!(
            "not scale invariant at {i}: rms_norm(2^{} x)[{i}] = {:e}, rms_norm(x)[{i}] = {:e}",
            inp.scale_exp, ys[i], y[i]
        ));
    }
    Ok(())
}

#[falsifier("FALSIFY-QW3-PROP-RMSNORM-001")]
fn rmsnorm_matches_f64_and_is_scale_invariant(ctx: &mut Ctx) -> FalsifierResult {
    use g::po_qw3_rmsnorm_002 as spec;
    let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
        rmsnorm_property(inp, rms_norm)
    })?;
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RoPE (PO-QW3-ROPE-002)

type Rope = fn(&mut [f32], &[f32], &[f32]);

fn rope_property(inp: &g::po_qw3_rope_002::Inputs, rope: Rope) -> Result<(), String> {
    let d = inp.head.len();
    let half = d / 2;
    let base: f32 = inp
        .base
        .parse()
        .map_err(|e| format!("base {}: {e}", inp.base))?;
    let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
    rope_table(inp.pos as usize, d, base, &mut cos, &mut sin);
    for i in 0..half {
        // The angle from its definition, p * b^(-2i/d), written as an exponential.
        let theta = inp.pos as f64 * (-(2.0 * i as f64 / d as f64) * (base as f64).ln()).exp();
        if !within((cos[i] as f64 - theta.cos()).abs(), 1e-6)
            || !within((sin[i] as f64 - theta.sin()).abs(), 1e-6)
        {
            return Err(format!(
                "table {i}: cos {} sin {} for angle {theta}",
                cos[i], sin[i]
            ));
        }
    }
    let x: Vec<f32> = inp.head.iter().map(|&v| v as f32).collect();
    let mut y = x.clone();
    rope(&mut y, &cos, &sin);
    for i in 0..half {
        let (a, b) = (x[i] as f64, x[i + half] as f64);
        let (c, s) = (cos[i] as f64, sin[i] as f64);
        let (r0, r1) = (a * c - b * s, a * s + b * c);
        let tol0 = 4.0 * U * ((a * c).abs() + (b * s).abs()) + 1e-40;
        let tol1 = 4.0 * U * ((a * s).abs() + (b * c).abs()) + 1e-40;
        if !within((y[i] as f64 - r0).abs(), tol0) || !within((y[i + half] as f64 - r1).abs(), tol1)
        {
            return Err(format!(
                "pair ({i}, {}): got ({}, {}), rotation gives ({r0:e}, {r1:e})",
                i + half,
                y[i],
                y[i + half]
            ));
        }
        let (n0, n1) = (a.hypot(b), (y[i] as f64).hypot(y[i + half] as f64));
        let table_err = (c * c + s * s - 1.0).abs();
        if !within((n1 - n0).abs(), (8.0 * U + table_err) * n0 + 1e-40) {
            return Err(format!("pair ({i}, {}): norm {n0:e} -> {n1:e}", i + half));
        }
    }
    Ok(())
}

#[falsifier("FALSIFY-QW3-PROP-ROPE-001")]
fn rope_rotates_neox_pairs_and_keeps_norms(ctx: &mut Ctx) -> FalsifierResult {
    use g::po_qw3_rope_002 as spec;
    let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
        rope_property(inp, rope_neox)
    })?;
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// GGUF round trip of generated files (PO-GGUF-RT-001)

type Reader = fn(Vec<u8>) -> Result<GgufFile, String>;

fn read_gguf(bytes: Vec<u8>) -> Result<GgufFile, String> {
    GgufFile::from_bytes(bytes).map_err(|e| e.to_string())
}

const RT_QTYPES: [QType; 5] = [QType::F32, QType::F16, QType::Q8_0, QType::Q4K, QType::Q6K];

/// A metadata value of a generated type (0..11) from a generated integer.
fn meta_value(ty: i64, v: i64) -> Value {
    match ty.rem_euclid(11) {
        0 => Value::U8(v as u8),
        1 => Value::I8(v as i8),
        2 => Value::U16(v as u16),
        3 => Value::I32(v as i32),
        4 => Value::U64(v as u64),
        5 => Value::I64(v),
        6 => Value::F32(v as f32 / 7.0),
        7 => Value::F64(v as f64 / 7.0),
        8 => Value::Bool(v % 2 == 0),
        9 => Value::String(format!("s{v}")),
        _ => Value::Array(
            engine::gguf::ValueType::I32,
            vec![Value::I32(v as i32), Value::I32(v.wrapping_add(1) as i32)],
        ),
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn gguf_property(inp: &g::po_gguf_rt_001::Inputs, read: Reader) -> Result<(), String> {
    let e = |x: engine::gguf::GgufError| x.to_string();
    let alignment = 1u32 << inp.align_log2;
    let mut w = GgufWriter::new(Vec::new());
    if alignment != 32 {
        w.set_alignment(alignment).map_err(e)?;
    }
    let mut meta = Vec::new();
    for (i, t) in inp.meta.chunks_exact(3).enumerate() {
        let key = format!("gen.k{i}.{}", t[1].rem_euclid(1000));
        let v = meta_value(t[0], t[2]);
        w.add_metadata(&key, v.clone()).map_err(e)?;
        meta.push((key, v));
    }
    let mut tensors = Vec::new();
    for (t, &qi) in inp.tensor_qtypes.iter().enumerate() {
        let q = RT_QTYPES[qi as usize];
        let spec = &inp.tensor_dims[3 * t..3 * t + 3];
        let shape = [
            spec[1] as u64 * q.block_size() as u64,
            spec[2] as u64,
            spec[0] as u64,
        ];
        let dims = &shape[..spec[0] as usize];
        let n: u64 = dims.iter().product();
        let n_bytes = (n / q.block_size() as u64 * q.block_bytes() as u64) as usize;
        let data: Vec<u8> = (0..n_bytes)
            .map(|b| {
                inp.data
                    .get((b + 7 * t) % inp.data.len().max(1))
                    .copied()
                    .unwrap_or(t as u8)
            })
            .collect();
        w.add_tensor(&format!("t{t}"), q, dims).map_err(e)?;
        tensors.push((format!("t{t}"), q, dims.to_vec(), data));
    }
    let expected_len = w.file_len();
    let mut dw = w.begin_data().map_err(e)?;
    for (_, _, _, data) in &tensors {
        dw.write_tensor_data(data).map_err(e)?;
    }
    let bytes = dw.finish().map_err(e)?;
    if bytes.len() as u64 != expected_len {
        return Err(format!(
            "file is {} bytes, file_len() said {expected_len}",
            bytes.len()
        ));
    }
    let f = read(bytes)?;
    let a = alignment as u64;
    if f.alignment() != a {
        return Err(format!("alignment {} read back as {}", a, f.alignment()));
    }
    let got: Vec<String> = f
        .metadata()
        .iter()
        .filter(|(k, _)| k != "general.alignment")
        .map(|kv| format!("{kv:?}"))
        .collect();
    let want: Vec<String> = meta.iter().map(|kv| format!("{kv:?}")).collect();
    if got != want {
        return Err(format!("metadata {got:?} read back, {want:?} written"));
    }
    if f.data_start() as u64 != align_up(f.header_len() as u64, a) {
        return Err(format!(
            "data_start {} for header {}",
            f.data_start(),
            f.header_len()
        ));
    }
    let mut next_offset = 0u64;
    let mut prev_end = f.data_start();
    for ((name, q, dims, data), info) in tensors.iter().zip(f.tensors()) {
        let n: u64 = dims.iter().product();
        let n_bytes = n / q.block_size() as u64 * q.block_bytes() as u64;
        let layout_ok = info.offset == next_offset
            && info.offset % a == 0
            && info.start as u64 == f.data_start() as u64 + info.offset
            && info.n_bytes as u64 == n_bytes
            && info.start >= prev_end
            && info.start + info.n_bytes <= f.file_len();
        if !layout_ok {
            return Err(format!(
                "{name}: offset {} start {} n_bytes {} (expected offset {next_offset}, {n_bytes} bytes)",
                info.offset, info.start, info.n_bytes
            ));
        }
        let view = f.tensor(name).ok_or(format!("{name} missing"))?;
        if view.qtype != *q || view.dims != dims.as_slice() || view.data != data.as_slice() {
            return Err(format!(
                "{name}: type, dims or bytes differ after the round trip"
            ));
        }
        next_offset = align_up(info.offset + n_bytes, a);
        prev_end = info.start + info.n_bytes;
    }
    if f.tensors().len() != tensors.len() {
        return Err(format!(
            "{} tensors read, {} written",
            f.tensors().len(),
            tensors.len()
        ));
    }
    Ok(())
}

#[falsifier("FALSIFY-GGUF-PROP-RT-001")]
fn gguf_round_trip_of_generated_files(ctx: &mut Ctx) -> FalsifierResult {
    use g::po_gguf_rt_001 as spec;
    let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
        gguf_property(inp, read_gguf)
    })?;
    ctx.metric("counterexamples", r.counterexamples as f64);
    ctx.metric("cases_run", r.cases_run as f64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Planted bugs: every property above must fail, shrink, and record the counterexample.

/// Runs `body` as falsifier `id` (the contract's thresholds) into a temporary directory and
/// returns the record; panics unless it failed with a counterexample after some shrinking.
fn planted(
    id: &str,
    body: impl FnOnce(&mut Ctx) -> FalsifierResult,
) -> pv_evidence::EvidenceRecord {
    let meta = prop::planted_meta(falsifiers::entry(id).expect("falsifier in the registry"));
    let dir = tempfile::tempdir().expect("tempdir");
    let run = pv_evidence::run_falsifier_in(&meta, dir.path(), body).expect("record written");
    let rec = run.record;
    assert_eq!(
        rec.outcome,
        pv_evidence::Outcome::Fail,
        "{id}: {:?}",
        rec.reason
    );
    let c = rec
        .counterexample
        .clone()
        .expect("the counterexample is in the record");
    assert!(c.shrink_steps > 0, "{id}: not shrunk: {c:?}");
    assert!(c.original_input.is_some(), "{id}: {c:?}");
    eprintln!(
        "{id} planted bug: counterexample {} ({}) after {} shrink steps",
        c.input, c.message, c.shrink_steps
    );
    // The record on disk has it too (what a person reads later).
    let text = std::fs::read_to_string(&run.path).expect("record readable");
    assert!(text.contains("\"counterexample\""), "{text}");
    rec
}

#[test]
fn planted_q4k_nibble_swap_is_found_and_shrunk() {
    // Bug: the two nibbles of the first quant byte swapped (values 0 and 32 exchanged).
    fn swapped(q: QType, src: &[u8], out: &mut [f32]) {
        scalar(q, src, out);
        out.swap(0, 32);
    }
    let rec = planted("FALSIFY-QK-PROP-Q4K-001", |ctx| {
        use g::po_qk_q4k_003 as spec;
        let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
            q4k_property(inp, swapped)
        })?;
        report(ctx, r);
        Ok(())
    });
    // Shrinking removes whole blocks down to the one the bug needs.
    let c = rec.counterexample.expect("counterexample");
    assert!(c.message.starts_with("value 0:"), "{c:?}");
    assert_eq!(
        c.input.matches(',').count(),
        144,
        "one 144-byte block: {}",
        c.input
    );
}

#[test]
fn planted_q6k_qh_pair_swap_is_found() {
    // Bug: values 0 and 32 exchanged (as if the qh bit pairs of group 0 and 1 were swapped).
    fn swapped(q: QType, src: &[u8], out: &mut [f32]) {
        scalar(q, src, out);
        out.swap(0, 32);
    }
    planted("FALSIFY-QK-PROP-Q6K-001", |ctx| {
        use g::po_qk_q6k_001 as spec;
        let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
            q6k_property(inp, swapped)
        })?;
        report(ctx, r);
        Ok(())
    });
}

#[test]
fn planted_scale_min_high_bits_bug_is_found() {
    // Bug: the min's high bits for j >= 4 taken from byte j - 4 (the scale's) instead of byte j.
    fn wrong(j: usize, q: &[u8]) -> (u8, u8) {
        let (sc, m) = scale_min_k4(j, q);
        if j >= 4 {
            (sc, (q[j + 4] >> 4) | ((q[j - 4] >> 6) << 4))
        } else {
            (sc, m)
        }
    }
    let (bad, checked, first) = scale_min_exhaustive(wrong);
    assert!(bad > 0 && checked >= 1 << 26, "{bad} of {checked}");
    assert!(first.is_some(), "the first mismatch is described");
}

#[test]
fn planted_top_k_ties_to_the_higher_index_are_found() {
    fn ties_high(p: &[f32], k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(b.cmp(&a)));
        idx.truncate(k);
        idx
    }
    let rec = planted("FALSIFY-QW3-PROP-ROUTER-001", |ctx| {
        use g::po_qw3_router_002 as spec;
        let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
            router_property(inp, ties_high)
        })?;
        report(ctx, r);
        Ok(())
    });
    // A handful of logits with a tie at the cut is all it needs.
    let c = rec.counterexample.expect("counterexample");
    assert!(c.message.contains("left out"), "{c:?}");
    assert!(
        c.input.matches(',').count() <= 4,
        "shrunk to a few logits: {}",
        c.input
    );
}

#[test]
fn planted_rmsnorm_eps_outside_the_root_is_found() {
    fn eps_outside(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
        let mean = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        let scale = (1.0 / (mean.sqrt() + eps as f64)) as f32;
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
            *o = v * scale * g;
        }
    }
    planted("FALSIFY-QW3-PROP-RMSNORM-001", |ctx| {
        use g::po_qw3_rmsnorm_002 as spec;
        let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
            rmsnorm_property(inp, eps_outside)
        })?;
        report(ctx, r);
        Ok(())
    });
}

#[test]
fn planted_rope_interleaved_pairing_is_found() {
    // Bug: GPT-J pairing (2i, 2i + 1) instead of NEOX (i, i + d/2).
    fn interleaved(head: &mut [f32], cos: &[f32], sin: &[f32]) {
        for i in 0..head.len() / 2 {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos[i] - b * sin[i];
            head[2 * i + 1] = a * sin[i] + b * cos[i];
        }
    }
    planted("FALSIFY-QW3-PROP-ROPE-001", |ctx| {
        use g::po_qw3_rope_002 as spec;
        let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
            rope_property(inp, interleaved)
        })?;
        report(ctx, r);
        Ok(())
    });
}

#[test]
fn planted_gguf_corrupted_last_byte_is_found() {
    // Bug: a reader that sees the file's last byte flipped (as a writer that mis-pads would).
    fn flipped(mut bytes: Vec<u8>) -> Result<GgufFile, String> {
        if let Some(b) = bytes.last_mut() {
            *b ^= 1;
        }
        read_gguf(bytes)
    }
    let rec = planted("FALSIFY-GGUF-PROP-RT-001", |ctx| {
        use g::po_gguf_rt_001 as spec;
        let r = prop::check(ctx, &spec::SPEC, spec::strategy(), |inp| {
            gguf_property(inp, flipped)
        })?;
        report(ctx, r);
        Ok(())
    });
    let c = rec.counterexample.expect("counterexample");
    // Even a file without metadata or tensors has a last byte to corrupt.
    assert!(c.input.contains("meta: [], tensor_qtypes: []"), "{c:?}");
}
